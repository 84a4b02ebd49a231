"""bmsgate history: InfluxDB writer, the SQLite archive behind charts and CSV, battery health."""
