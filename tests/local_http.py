"""An HTTP server on 127.0.0.1, started by a test, for the downloader's and the pretrained weights' tests."""
import http.server
import threading


class QuietServer(http.server.ThreadingHTTPServer):
    """A client that gives up mid-transfer (a timeout, a dropped connection) is what these tests make happen: the
    broken pipe it leaves in the server's thread is not printed, where it would land in the tested command's
    captured stderr."""

    def handle_error(self, request, client_address):
        pass


def start(handler: type) -> tuple[QuietServer, str]:
    """(the server, its URL) on a free port, serving `handler` from a daemon thread."""
    httpd = QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
