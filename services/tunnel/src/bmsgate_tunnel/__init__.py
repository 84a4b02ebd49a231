"""bmsgate tunnel: TCP to a BMS line, for the vendors' PC software."""
