"""The web interface for marketers (docs/web.md): the page's own ES modules, styles and the
committed bundles of its libraries (CodeMirror, Chart.js, Cytoscape.js: built from web/ by
``npm run build``) shipped as package data (``static/``) and served by the service itself
(:mod:`cdp.web.views`); the page talks to the same ``/v1`` API with the API key the user pastes in."""
