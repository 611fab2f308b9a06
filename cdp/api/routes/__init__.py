"""The HTTP routes, one module per domain package (cdp/<domain>/service.py does the work): thin
``APIRouter``s that read the request, call services and shape the answer. cdp/api/app.py mounts
them under ``/v1``."""
