"""The cluster as data: the typed model (`cluster`), loading a YAML file with every problem
reported at once (`loading`), the cross-field rules (`rules`), roles read from role.yaml
(`roles`), platform layouts (`platform`), where each value comes from (`origins`), the
published JSON Schema (`schema`) and the cluster's secrets.

No stage runs from here, and all of it is free of side effects but one part: the key store.
`secrets` and `pki` (driven by `tlsplan`) read and, when something is missing or rotated,
write the cluster's passwords (output/<cluster>/secrets.yaml) and its CA and certificates
(output/<cluster>/pki/), with private files 0600 in 0700 folders."""
