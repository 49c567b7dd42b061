"""The documentation: its samples run, its tables match the code, its report is current."""
