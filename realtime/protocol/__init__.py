"""Pure wire logic of the Pusher (V1) protocol: no Django imports, so it is easy to test and fuzz."""
