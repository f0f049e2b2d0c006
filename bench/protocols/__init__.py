"""One module per wire protocol for bench_streaming.py: NAME, CONTENT_TYPE, stream_body(events),
make_provider(base_url), make_request()."""
