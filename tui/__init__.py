"""The Textual front end of cnnprobe (`cnnprobe-tui`); it only calls the engine."""
