"""/docs is served whole by this process: no CDN, so it works offline."""

import re


def test_the_docs_page_loads_swagger_ui_from_this_server_only(client):
    page = client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "/docs/assets/swagger-ui-bundle.js" in sources
    assert "/docs/assets/swagger-ui.css" in sources
    assert not [s for s in sources if s.startswith(("http:", "https:", "//"))]
    script = client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )
    assert b"SwaggerUIBundle" in script.content
    assert client.get("/docs/assets/swagger-ui.css").headers["content-type"].startswith("text/css")
    assert client.get("/docs/assets/..%2Fsecret").status_code == 404
