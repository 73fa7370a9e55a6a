"""Real-time rating daemon for FreeSWITCH."""
