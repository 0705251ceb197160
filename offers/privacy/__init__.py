"""Personal data handled as such: location retention (retention.py) and erasure (erasure.py)."""
