//! A small OCI distribution API client.
