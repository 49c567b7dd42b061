"""Diagrams of procedures: DOT, Mermaid, SVG and PNG, with execution overlays."""
