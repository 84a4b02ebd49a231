"""bmsgate's serial edge: the link to a port, the machine's port list, a scan over the link."""
