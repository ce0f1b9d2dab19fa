"""initial ledger schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-21 23:17:48.088131
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('token_id', sa.String(length=32), nullable=False),
    sa.Column('secret_sha256', sa.LargeBinary(length=32), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('roles', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_id', name=op.f('uq_api_tokens_token_id'))
    )
    op.create_table('logs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('origin', sa.String(length=255), nullable=False),
    sa.Column('tree_size', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_logs')),
    sa.UniqueConstraint('name', name=op.f('uq_logs_name')),
    sa.UniqueConstraint('origin', name=op.f('uq_logs_origin'))
    )
    op.create_table('anchors',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('log_id', sa.Integer(), nullable=False),
    sa.Column('tree_size', sa.BigInteger(), nullable=False),
    sa.Column('chain_id', sa.BigInteger(), nullable=False),
    sa.Column('contract_address', sa.String(length=42), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('block_number', sa.BigInteger(), nullable=False),
    sa.Column('block_hash', sa.String(length=66), nullable=False),
    sa.Column('anchored_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('checkpoint_index', sa.BigInteger(), nullable=False),
    sa.Column('gas_used', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['log_id'], ['logs.id'], name=op.f('fk_anchors_log_id_logs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_anchors')),
    sa.UniqueConstraint('chain_id', 'tx_hash', name=op.f('uq_anchors_chain_id_tx_hash'))
    )
    with op.batch_alter_table('anchors', schema=None) as batch_op:
        batch_op.create_index('ix_anchors_log_chain_size', ['log_id', 'chain_id', 'tree_size'], unique=False)

    op.create_table('checkpoints',
    sa.Column('log_id', sa.Integer(), nullable=False),
    sa.Column('tree_size', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('root_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['log_id'], ['logs.id'], name=op.f('fk_checkpoints_log_id_logs')),
    sa.PrimaryKeyConstraint('log_id', 'tree_size', name=op.f('pk_checkpoints'))
    )
    op.create_table('log_entries',
    sa.Column('log_id', sa.Integer(), nullable=False),
    sa.Column('idx', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('leaf_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('record_digest', sa.LargeBinary(length=32), nullable=False),
    sa.Column('salt', sa.LargeBinary(length=32), nullable=False),
    sa.Column('record', sa.Text(), nullable=True),
    sa.Column('appended_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['log_id'], ['logs.id'], name=op.f('fk_log_entries_log_id_logs')),
    sa.PrimaryKeyConstraint('log_id', 'idx', name=op.f('pk_log_entries'))
    )
    op.create_table('tree_nodes',
    sa.Column('log_id', sa.Integer(), nullable=False),
    sa.Column('level', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('idx', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('hash', sa.LargeBinary(length=32), nullable=False),
    sa.ForeignKeyConstraint(['log_id'], ['logs.id'], name=op.f('fk_tree_nodes_log_id_logs')),
    sa.PrimaryKeyConstraint('log_id', 'level', 'idx', name=op.f('pk_tree_nodes'))
    )


def downgrade() -> None:
    op.drop_table('tree_nodes')
    op.drop_table('log_entries')
    op.drop_table('checkpoints')
    with op.batch_alter_table('anchors', schema=None) as batch_op:
        batch_op.drop_index('ix_anchors_log_chain_size')

    op.drop_table('anchors')
    op.drop_table('logs')
    op.drop_table('api_tokens')
