"""The web interface for marketers (docs/web.md): plain HTML, CSS and JavaScript files shipped as
package data (``static/``) and served by the service itself (:mod:`cdp.web.views`); the page talks
to the same ``/v1`` API with the API key the user pastes in."""
