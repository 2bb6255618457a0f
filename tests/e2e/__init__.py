"""End-to-end tests: real servers on loopback (OTLP receiver, Bugsink, the app itself)."""
