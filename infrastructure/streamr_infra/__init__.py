"""StreamrP2P's AWS CDK app: foundation, application and monitoring stacks per stage.

``bin/app.py`` is the entry point ``cdk`` runs; ``config/stages.toml`` holds what differs
between the stages (beta, gamma, prod), read and validated by ``streamr_infra.config``.
"""
