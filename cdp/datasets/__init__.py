"""Datasets: named sources of records of one kind — profile records ("CRM contacts") or events
("Web events") — carrying data-usage labels on the dataset and on its fields (cdp/governance).

Ingestion (a later issue) writes records through a dataset; governance reads its labels.
"""
