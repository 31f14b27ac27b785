"""`onelab regress`: every course notebook run with papermill in the course's image, its metrics
checked against the course spec, and every assignment's grading checked (solution earns full
marks, the released version zero)."""
