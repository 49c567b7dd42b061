"""The procstore command line: its commands, output, exit codes, escaping and trusted host code."""
