"""The durable event inbox: storing verified events (``store``) and draining them (``queue``)."""
