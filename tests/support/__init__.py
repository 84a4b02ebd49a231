"""Reusable test parts: a real Mosquitto, the simulator on a pty, services as processes.

Every later test uses these; nothing here is a mock: brokers, serial lines and services are real
processes on free local ports.
"""
