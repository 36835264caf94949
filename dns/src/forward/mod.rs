//! Forwarding and caching for names outside the cluster zone.
