"""The cluster as data: the typed model (`cluster`), loading a YAML file with every problem
reported at once (`loading`), the cross-field rules (`rules`), roles read from role.yaml
(`roles`), platform layouts (`platform`) and the cluster's secrets (`secrets`). Pure: no stage
runs from here."""
