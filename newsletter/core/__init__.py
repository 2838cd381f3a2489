"""Settings, database, models, transition tables, errors, audit log, languages and signing: what every
stage stands on.
"""
