"""Trust rules: bank-editable rule files and one Python class per rule kind."""
