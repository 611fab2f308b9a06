"""Cross-cutting pieces every layer may import (metrics today); they import no other cdp package,
so a domain service counts what it does without reaching up into the HTTP layer."""
