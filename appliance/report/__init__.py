"""`appliance replay --report`: an HTML report built from the run's EVE events (collect.py
aggregates them in bounded memory, html.py renders one self-contained file)."""
