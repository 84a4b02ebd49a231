"""bmsgate publisher: dongle-compatible MQTT, Home Assistant discovery, external brokers, banks."""
