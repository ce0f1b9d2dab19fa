// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import "./Owned2Step.sol";

/// @title LedgerAnchor
/// @author evidence-ledger
/// @notice Anchors checkpoints of append-only Merkle logs (RFC 6962 / RFC 9162 trees).
///         For every log id the contract keeps an append-only list of checkpoints whose tree
///         sizes strictly grow; nothing is ever modified or deleted. Only authorised anchorers
///         may append. The owner manages anchorers and transfers ownership in two steps
///         (`Owned2Step`); a new owner is not made an anchorer automatically.
/// @dev No external imports (only `Owned2Step` from this directory). Checkpoints are stored
///      packed in two slots; the public `Checkpoint` struct is the stable ABI shape. `anchoredAt`
///      and `blockNumber` are taken from the block that includes the anchoring transaction.
contract LedgerAnchor is Owned2Step {
    /// @notice A checkpoint of one log as anchored on chain.
    /// @param treeSize Number of leaves the Merkle root commits to.
    /// @param rootHash RFC 6962 Merkle tree hash of the first `treeSize` leaves.
    /// @param anchoredAt Timestamp (unix seconds) of the block that anchored the checkpoint.
    /// @param blockNumber Number of the block that anchored the checkpoint.
    struct Checkpoint {
        uint64 treeSize;
        bytes32 rootHash;
        uint64 anchoredAt;
        uint64 blockNumber;
    }

    /// @dev Storage layout of a checkpoint: 2 slots instead of the 3 `Checkpoint` would take.
    struct StoredCheckpoint {
        uint64 treeSize;
        uint64 anchoredAt;
        uint64 blockNumber;
        bytes32 rootHash;
    }

    /// @dev Accounts allowed to anchor checkpoints.
    mapping(address account => bool allowed) private _anchorers;
    /// @dev Per log id, checkpoints in anchoring order (tree sizes strictly increasing).
    mapping(bytes32 logId => StoredCheckpoint[] checkpoints) private _checkpoints;

    /// @notice A checkpoint was appended to the list of log `logId`.
    /// @param logId Identifier of the log (e.g. a hash of its C2SP origin line).
    /// @param index Position of the checkpoint in the log's list (0 for the first).
    /// @param treeSize Tree size of the checkpoint.
    /// @param rootHash Merkle root of the checkpoint.
    /// @param anchoredAt Block timestamp at which the checkpoint was anchored.
    /// @param anchorer Account that anchored the checkpoint.
    event CheckpointAnchored(
        bytes32 indexed logId,
        uint256 indexed index,
        uint64 treeSize,
        bytes32 rootHash,
        uint64 anchoredAt,
        address indexed anchorer
    );

    /// @notice `account` was granted the anchorer role by `by`.
    /// @param account Account that may now anchor checkpoints.
    /// @param by Account that granted the role (the owner, or the deployer at construction).
    event AnchorerGranted(address indexed account, address indexed by);

    /// @notice `account` lost the anchorer role, revoked by `by`.
    /// @param account Account that may no longer anchor checkpoints.
    /// @param by Owner that revoked the role.
    event AnchorerRevoked(address indexed account, address indexed by);

    /// @notice The caller is not an authorised anchorer.
    /// @param caller Account that tried to anchor.
    error NotAnchorer(address caller);

    /// @notice A checkpoint's root hash must not be zero.
    /// @param logId Log the checkpoint was proposed for.
    error ZeroRoot(bytes32 logId);

    /// @notice A checkpoint's tree size must be greater than the previous one's (and than zero).
    /// @param logId Log the checkpoint was proposed for.
    /// @param previousTreeSize Tree size of the latest anchored checkpoint (0 if none).
    /// @param proposedTreeSize Rejected tree size.
    error TreeSizeNotIncreasing(bytes32 logId, uint64 previousTreeSize, uint64 proposedTreeSize);

    /// @notice No checkpoint at that index.
    /// @param logId Log queried.
    /// @param index Requested index.
    /// @param count Number of checkpoints of the log.
    error IndexOutOfRange(bytes32 logId, uint256 index, uint256 count);

    /// @notice The log has no checkpoint yet.
    /// @param logId Log queried.
    error NoCheckpoint(bytes32 logId);

    /// @notice No checkpoint of the log has exactly that tree size.
    /// @param logId Log queried.
    /// @param treeSize Requested tree size.
    error CheckpointNotFound(bytes32 logId, uint64 treeSize);

    /// @dev Reverts with `NotAnchorer` unless the caller is an anchorer.
    modifier onlyAnchorer() {
        if (!_anchorers[msg.sender]) revert NotAnchorer(msg.sender);
        _;
    }

    /// @notice Deploys the contract with `initialOwner` as owner and first anchorer.
    /// @param initialOwner Owner; also granted the anchorer role. Must not be zero.
    constructor(address initialOwner) Owned2Step(initialOwner) {
        _anchorers[initialOwner] = true;
        emit AnchorerGranted(initialOwner, msg.sender);
    }

    // ------------------------------------------------------------------ anchoring

    /// @notice Appends a checkpoint to the list of log `logId`.
    /// @dev The tree size must strictly exceed the latest checkpoint's (so the first one must be
    ///      greater than zero). Consistency between successive roots is proven off chain.
    /// @param logId Identifier of the log.
    /// @param treeSize Number of leaves the root commits to.
    /// @param rootHash Merkle root of the first `treeSize` leaves; must not be zero.
    /// @return index Position of the new checkpoint in the log's list.
    function anchor(bytes32 logId, uint64 treeSize, bytes32 rootHash)
        external
        onlyAnchorer
        returns (uint256 index)
    {
        if (rootHash == bytes32(0)) revert ZeroRoot(logId);
        StoredCheckpoint[] storage list = _checkpoints[logId];
        index = list.length;
        uint64 previousTreeSize = index == 0 ? 0 : list[index - 1].treeSize;
        if (treeSize <= previousTreeSize) {
            revert TreeSizeNotIncreasing(logId, previousTreeSize, treeSize);
        }
        uint64 anchoredAt = uint64(block.timestamp);
        list.push(
            StoredCheckpoint({
                treeSize: treeSize,
                anchoredAt: anchoredAt,
                blockNumber: uint64(block.number),
                rootHash: rootHash
            })
        );
        emit CheckpointAnchored(logId, index, treeSize, rootHash, anchoredAt, msg.sender);
    }

    /// @notice Number of checkpoints anchored for log `logId`.
    /// @param logId Identifier of the log.
    /// @return Number of checkpoints (0 if none).
    function checkpointCount(bytes32 logId) external view returns (uint256) {
        return _checkpoints[logId].length;
    }

    /// @notice Tree size of the latest checkpoint of log `logId`, or 0 if it has none.
    /// @param logId Identifier of the log.
    /// @return Latest anchored tree size (0 if none).
    function latestTreeSize(bytes32 logId) external view returns (uint64) {
        StoredCheckpoint[] storage list = _checkpoints[logId];
        uint256 count = list.length;
        return count == 0 ? 0 : list[count - 1].treeSize;
    }

    /// @notice The checkpoint at position `index` of log `logId`.
    /// @param logId Identifier of the log.
    /// @param index Position (0-based, in anchoring order).
    /// @return The checkpoint.
    function checkpointAt(bytes32 logId, uint256 index) external view returns (Checkpoint memory) {
        StoredCheckpoint[] storage list = _checkpoints[logId];
        uint256 count = list.length;
        if (index >= count) revert IndexOutOfRange(logId, index, count);
        return _toCheckpoint(list[index]);
    }

    /// @notice The latest checkpoint of log `logId`.
    /// @param logId Identifier of the log.
    /// @return The checkpoint with the largest tree size.
    function latestCheckpoint(bytes32 logId) external view returns (Checkpoint memory) {
        StoredCheckpoint[] storage list = _checkpoints[logId];
        uint256 count = list.length;
        if (count == 0) revert NoCheckpoint(logId);
        return _toCheckpoint(list[count - 1]);
    }

    /// @notice Finds the checkpoint of log `logId` with exactly tree size `treeSize`.
    /// @dev Binary search: tree sizes strictly increase with the index. O(log n) reads.
    /// @param logId Identifier of the log.
    /// @param treeSize Tree size to look for.
    /// @return index Position of the checkpoint.
    /// @return checkpoint The checkpoint.
    function findCheckpoint(bytes32 logId, uint64 treeSize)
        external
        view
        returns (uint256 index, Checkpoint memory checkpoint)
    {
        StoredCheckpoint[] storage list = _checkpoints[logId];
        uint256 low = 0;
        uint256 high = list.length;
        while (low < high) {
            uint256 mid = (low + high) / 2;
            uint64 midSize = list[mid].treeSize;
            if (midSize == treeSize) {
                return (mid, _toCheckpoint(list[mid]));
            }
            if (midSize < treeSize) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        revert CheckpointNotFound(logId, treeSize);
    }

    // ------------------------------------------------------------------ anchorers

    /// @notice Whether `account` may anchor checkpoints.
    /// @param account Account to check.
    /// @return True if `account` holds the anchorer role.
    function isAnchorer(address account) external view returns (bool) {
        return _anchorers[account];
    }

    /// @notice Grants the anchorer role to `account`. No-op (no event) if it already holds it.
    /// @param account Account to authorise; must not be zero.
    function grantAnchorer(address account) external onlyOwner {
        if (account == address(0)) revert ZeroAddress();
        if (!_anchorers[account]) {
            _anchorers[account] = true;
            emit AnchorerGranted(account, msg.sender);
        }
    }

    /// @notice Revokes the anchorer role from `account`. No-op (no event) if it does not hold it.
    /// @param account Account to deauthorise.
    function revokeAnchorer(address account) external onlyOwner {
        if (_anchorers[account]) {
            _anchorers[account] = false;
            emit AnchorerRevoked(account, msg.sender);
        }
    }

    // ------------------------------------------------------------------ internals

    /// @dev Converts the storage layout to the public ABI shape.
    /// @param stored Checkpoint in storage.
    /// @return The checkpoint in memory.
    function _toCheckpoint(StoredCheckpoint storage stored) private view returns (Checkpoint memory) {
        return Checkpoint({
            treeSize: stored.treeSize,
            rootHash: stored.rootHash,
            anchoredAt: stored.anchoredAt,
            blockNumber: stored.blockNumber
        });
    }
}
