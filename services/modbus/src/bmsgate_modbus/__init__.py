"""bmsgate Modbus TCP: the dongle's register map, and a client pushing to other servers."""
