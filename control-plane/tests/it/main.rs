//! Integration tests of the control plane (filled in below).
