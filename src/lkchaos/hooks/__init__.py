"""A webhook receiver's deliveries: LiveKit's webhooks and Alertmanager's notifications.

The reference stack runs one (``voicestack.hooks_server``, the ``webhook_receiver`` role);
a deployment of its own points ``monitoring.receiver_url`` in its target file at the same
server, or has none (the activities here then do not apply).
"""
