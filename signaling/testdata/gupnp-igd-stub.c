/* A no-op libgupnp-igd-1.0.so.4 for Debian's whip-client (simple-whip-client).
 * As shipped, whip-client aborts at start: it links libsoup 2, while libnice
 * loads libsoup 3 through libgupnp-igd. Built with
 *   cc -shared -fPIC -Wl,-soname,libgupnp-igd-1.0.so.4 -o libgupnp-igd-1.0.so.4 gupnp-igd-stub.c
 * and put first in LD_LIBRARY_PATH for whip-client alone, it stands in for the
 * real library (which also keeps UPnP discovery off the network). Used by
 * signaling/whipclient_test.go and webclient/test/e2e/harness.mjs. */
typedef unsigned long GType;
void *gupnp_simple_igd_thread_new(void) { return 0; }
GType gupnp_simple_igd_get_type(void) { return 0; }
void gupnp_simple_igd_add_port(void *a, const char *p, unsigned e, const char *l, unsigned i, unsigned t, const char *d) {}
void gupnp_simple_igd_remove_port_local(void *a, const char *p, const char *l, unsigned i) {}
