"""Examples of integrating with kaizend: the reference FIT search service and the demo."""
