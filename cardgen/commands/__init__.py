"""The commands of the command line, one module per group of commands; ``cardgen.cli`` registers them.

These modules parse options, call one library function and show its result through ``cardgen.console``. They
import click; library code never does.
"""
