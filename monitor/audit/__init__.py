"""The registry's security posture, checked from its configuration and its live behaviour.

`model` holds the check result; `registry_config`, `htpasswd` and `x509` read the registry's
files (pure); `probe` is the interface to the live registry with its real implementation;
`checks_*` turn what was observed into one row per check, with `now` passed in; `gather`
reads files, probes and the store into `Facts`, the only part doing I/O.
"""
