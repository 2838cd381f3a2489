"""Getting an edition to every member: headers, the message and its splicer, DKIM, the outbox, the
engine, the runner, transports.
"""
