"""bmsgate notifier: alarms, failures and daily reports through Apprise."""
