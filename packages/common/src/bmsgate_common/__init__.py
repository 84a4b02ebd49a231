"""bmsgate's shared core: the message contract, topics, settings, backbone and logging."""
