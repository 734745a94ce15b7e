"""The core: the vocabulary and the rules of bulk enrolment, once. Imported by the apps; imports none of them.

``domain`` (pure rules), ``messages`` (Avro codecs), ``store`` (tables, migrations, SQL per concern),
``kafka`` (clients, checkpoint, run loop), plus settings, logs, errors, csvsafe and the file reader.
"""
