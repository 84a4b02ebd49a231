"""What bmsgate sends outside: HA discovery, flat topics, dongle packets, openHASP (pure)."""
