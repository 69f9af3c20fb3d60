"""Routing data: the score tables, the routing log (SQLite) and the public data sets' download."""
