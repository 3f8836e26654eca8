"""The edge reader: serial ports in, MQTT out, through an on-disk store-and-forward queue."""
