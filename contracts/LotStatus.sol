// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import "./Owned2Step.sol";

/// @title LotStatus
/// @author evidence-ledger
/// @notice Public recall and disposal status of food lots, set by regulators, so that a
///         retailer's till or a consumer's phone can check a recall straight on chain
///         (`isRecalled(lotKey)`, one storage read).
/// @dev No external imports (only `Owned2Step` from this directory).
///      A lot is identified by `lotKey`, a hash computed off chain so that no lot list is
///      published: `keccak256(bytes("evidence-ledger/lot/" + path))` where `path` is the GS1
///      Digital Link path of the lot, e.g. `/01/09506000134352/10/LOT42` (GTIN as 14 digits, the
///      lot number percent-encoded as in a Digital Link URI).
///      Trust model: the owner grants and revokes the regulator role (the owner is a regulator
///      from construction; a new owner is not made one automatically); regulators set statuses.
///      Transitions (anything else reverts with `InvalidTransition`):
///      - Unknown  -> Active, Recalled, Disposed
///      - Active   -> Recalled, Disposed
///      - Recalled -> Released (recall lifted), Disposed (recalled stock destroyed)
///      - Released -> Recalled (a new recall), Disposed
///      - Disposed is final.
///      Storage: one slot per lot (status, time, cause id); the (reasonHash, parentLotKey) pair is
///      stored once per cause and shared by every lot set with it (a batch stores it once; a
///      cause equal to the latest one is reused), so a 500-lot recall fits in one transaction.
///      The full history of a lot is in its `LotStatusChanged` events.
contract LotStatus is Owned2Step {
    /// @notice Status of a lot. `Unknown` is the status of a lot never set.
    /// @dev Released means a recall was lifted: the lot may be sold again.
    enum Status {
        Unknown,
        Active,
        Recalled,
        Disposed,
        Released
    }

    /// @dev A lot's stored state, packed in one slot.
    struct Lot {
        Status status;
        uint64 updatedAt;
        uint64 causeId;
    }

    /// @dev Why lots were set: shared by every lot set with the same pair. Id 0 means both zero.
    struct Cause {
        bytes32 reasonHash;
        bytes32 parentLotKey;
    }

    /// @notice Largest number of lots `setStatusBatch` accepts in one call.
    uint256 public constant MAX_BATCH = 500;

    /// @dev Allowed transitions: bit `from * 8 + to` is set when `from -> to` is allowed.
    uint256 private constant _TRANSITIONS =
        (1 << (0 * 8 + 1)) | (1 << (0 * 8 + 2)) | (1 << (0 * 8 + 3)) // Unknown -> Active, Recalled, Disposed
        | (1 << (1 * 8 + 2)) | (1 << (1 * 8 + 3)) // Active -> Recalled, Disposed
        | (1 << (2 * 8 + 3)) | (1 << (2 * 8 + 4)) // Recalled -> Disposed, Released
        | (1 << (4 * 8 + 2)) | (1 << (4 * 8 + 3)); // Released -> Recalled, Disposed

    /// @dev Accounts allowed to set lot statuses.
    mapping(address account => bool allowed) private _regulators;
    /// @dev Per lot key, its current state.
    mapping(bytes32 lotKey => Lot lot) private _lots;
    /// @dev Causes by id (1-based; id 0 is the all-zero cause and is never stored).
    mapping(uint256 causeId => Cause cause) private _causes;
    /// @dev Id of the latest stored cause (0 if none).
    uint64 private _latestCauseId;

    /// @notice Lot `lotKey` changed from status `from` to status `to`, set by regulator `by`.
    /// @param lotKey Key of the lot.
    /// @param from Previous status (Unknown for a lot never set).
    /// @param to New status.
    /// @param reasonHash Hash of the decision or notice behind the change (e.g. of the recall
    ///        notice document); may be zero.
    /// @param parentLotKey Key of the ancestor lot whose status caused this one, or zero.
    /// @param by Regulator that set the status.
    event LotStatusChanged(
        bytes32 indexed lotKey,
        Status from,
        Status to,
        bytes32 reasonHash,
        bytes32 indexed parentLotKey,
        address indexed by
    );

    /// @notice `account` was granted the regulator role by `by`.
    /// @param account Account that may now set lot statuses.
    /// @param by Account that granted the role (the owner, or the deployer at construction).
    event RegulatorGranted(address indexed account, address indexed by);

    /// @notice `account` lost the regulator role, revoked by `by`.
    /// @param account Account that may no longer set lot statuses.
    /// @param by Owner that revoked the role.
    event RegulatorRevoked(address indexed account, address indexed by);

    /// @notice The caller is not a regulator.
    /// @param caller Account that tried to set a status.
    error NotRegulator(address caller);

    /// @notice `status` is not a valid `Status` value (0 to 4).
    /// @param status Rejected value.
    error InvalidStatus(uint8 status);

    /// @notice Lot `lotKey` cannot move from status `from` to status `to`.
    /// @param lotKey Key of the lot.
    /// @param from Current status of the lot.
    /// @param to Requested status.
    error InvalidTransition(bytes32 lotKey, uint8 from, uint8 to);

    /// @notice A lot key must not be zero.
    /// @param index Position of the zero key in the batch (0 for `setStatus`).
    error ZeroLotKey(uint256 index);

    /// @notice A lot cannot be its own parent.
    /// @param lotKey Key given both as the lot and as its parent.
    error SelfParent(bytes32 lotKey);

    /// @notice A batch must hold at least one lot.
    error EmptyBatch();

    /// @notice A batch must hold at most `max` lots.
    /// @param length Length of the rejected batch.
    /// @param max Largest accepted batch length.
    error BatchTooLarge(uint256 length, uint256 max);

    /// @dev Reverts with `NotRegulator` unless the caller is a regulator.
    modifier onlyRegulator() {
        if (!_regulators[msg.sender]) revert NotRegulator(msg.sender);
        _;
    }

    /// @notice Deploys the contract with `initialOwner` as owner and first regulator.
    /// @param initialOwner Owner; also granted the regulator role. Must not be zero.
    constructor(address initialOwner) Owned2Step(initialOwner) {
        _regulators[initialOwner] = true;
        emit RegulatorGranted(initialOwner, msg.sender);
    }

    // ------------------------------------------------------------------ statuses

    /// @notice Sets the status of lot `lotKey`.
    /// @dev Only regulators. Emits `LotStatusChanged`. See the contract's notes for the allowed
    ///      transitions; setting the current status again is not a transition and reverts.
    /// @param lotKey Key of the lot; must not be zero.
    /// @param status New status (a `Status` value other than Unknown).
    /// @param reasonHash Hash of the decision or notice behind the change; may be zero.
    /// @param parentLotKey Key of the ancestor lot whose status causes this change (a descendant
    ///        recalled because of its ancestor), or zero. Must differ from `lotKey`.
    function setStatus(bytes32 lotKey, uint8 status, bytes32 reasonHash, bytes32 parentLotKey)
        external
        onlyRegulator
    {
        if (lotKey == bytes32(0)) revert ZeroLotKey(0);
        if (parentLotKey == lotKey) revert SelfParent(lotKey);
        Status to = _toStatus(status);
        _set(lotKey, to, _causeId(reasonHash, parentLotKey), reasonHash, parentLotKey);
    }

    /// @notice Sets the status of every lot of `lotKeys` at once, e.g. to recall a whole tree of
    ///         descendant lots in one transaction.
    /// @dev Only regulators. All or nothing: one invalid lot (zero key, forbidden transition,
    ///      a key listed twice) reverts the whole batch. Emits one `LotStatusChanged` per lot.
    ///      Every lot gets `rootLotKey` as its parent, except the root itself if it is listed
    ///      (its parent is recorded as zero).
    /// @param lotKeys Keys of the lots, 1 to `MAX_BATCH` of them, none zero.
    /// @param status New status of every lot (a `Status` value other than Unknown).
    /// @param reasonHash Hash of the decision or notice behind the change; may be zero.
    /// @param rootLotKey Key of the ancestor lot the change stems from, or zero.
    function setStatusBatch(
        bytes32[] calldata lotKeys,
        uint8 status,
        bytes32 reasonHash,
        bytes32 rootLotKey
    ) external onlyRegulator {
        uint256 length = lotKeys.length;
        if (length == 0) revert EmptyBatch();
        if (length > MAX_BATCH) revert BatchTooLarge(length, MAX_BATCH);
        Status to = _toStatus(status);
        uint64 causeId = _causeId(reasonHash, rootLotKey);
        for (uint256 i = 0; i < length; ++i) {
            bytes32 lotKey = lotKeys[i];
            if (lotKey == bytes32(0)) revert ZeroLotKey(i);
            if (lotKey == rootLotKey) {
                _set(lotKey, to, _causeId(reasonHash, bytes32(0)), reasonHash, bytes32(0));
            } else {
                _set(lotKey, to, causeId, reasonHash, rootLotKey);
            }
        }
    }

    /// @notice Current status of lot `lotKey`; all zero for a lot never set.
    /// @param lotKey Key of the lot.
    /// @return status Current status (a `Status` value).
    /// @return updatedAt Timestamp of the block that set it (0 if never set).
    /// @return reasonHash Reason hash given with the current status.
    /// @return parentLotKey Parent lot key given with the current status (zero if none).
    function statusOf(bytes32 lotKey)
        external
        view
        returns (Status status, uint64 updatedAt, bytes32 reasonHash, bytes32 parentLotKey)
    {
        Lot memory lot = _lots[lotKey];
        Cause memory cause = _causes[lot.causeId];
        return (lot.status, lot.updatedAt, cause.reasonHash, cause.parentLotKey);
    }

    /// @notice Whether lot `lotKey` is under recall now (status Recalled). One storage read.
    /// @param lotKey Key of the lot.
    /// @return True if the lot's current status is Recalled.
    function isRecalled(bytes32 lotKey) external view returns (bool) {
        return _lots[lotKey].status == Status.Recalled;
    }

    // ------------------------------------------------------------------ regulators

    /// @notice Whether `account` may set lot statuses.
    /// @param account Account to check.
    /// @return True if `account` holds the regulator role.
    function isRegulator(address account) external view returns (bool) {
        return _regulators[account];
    }

    /// @notice Grants the regulator role to `account`. No-op (no event) if it already holds it.
    /// @param account Account to authorise; must not be zero.
    function grantRegulator(address account) external onlyOwner {
        if (account == address(0)) revert ZeroAddress();
        if (!_regulators[account]) {
            _regulators[account] = true;
            emit RegulatorGranted(account, msg.sender);
        }
    }

    /// @notice Revokes the regulator role from `account`. No-op (no event) if it does not hold it.
    /// @param account Account to deauthorise.
    function revokeRegulator(address account) external onlyOwner {
        if (_regulators[account]) {
            _regulators[account] = false;
            emit RegulatorRevoked(account, msg.sender);
        }
    }

    // ------------------------------------------------------------------ internals

    /// @dev Converts a raw status to `Status`; reverts with `InvalidStatus` if out of range.
    ///      Unknown is in range: it is then rejected as a transition, naming the lot.
    /// @param status Raw value.
    /// @return The status.
    function _toStatus(uint8 status) private pure returns (Status) {
        if (status > uint8(type(Status).max)) revert InvalidStatus(status);
        return Status(status);
    }

    /// @dev Id of the cause (`reasonHash`, `parentLotKey`): 0 if both are zero, the latest
    ///      stored cause if equal, else a newly stored one.
    /// @param reasonHash Reason hash.
    /// @param parentLotKey Parent lot key.
    /// @return id The cause id.
    function _causeId(bytes32 reasonHash, bytes32 parentLotKey) private returns (uint64 id) {
        if (reasonHash == bytes32(0) && parentLotKey == bytes32(0)) return 0;
        id = _latestCauseId;
        if (id != 0) {
            Cause storage latest = _causes[id];
            if (latest.reasonHash == reasonHash && latest.parentLotKey == parentLotKey) return id;
        }
        id += 1;
        _causes[id] = Cause({reasonHash: reasonHash, parentLotKey: parentLotKey});
        _latestCauseId = id;
    }

    /// @dev Moves lot `lotKey` to status `to` if the transition is allowed, and emits the event.
    /// @param lotKey Key of the lot (not zero).
    /// @param to New status.
    /// @param causeId Id of the stored cause (`reasonHash`, `parentLotKey`).
    /// @param reasonHash Reason hash (for the event).
    /// @param parentLotKey Parent lot key (for the event).
    function _set(bytes32 lotKey, Status to, uint64 causeId, bytes32 reasonHash, bytes32 parentLotKey)
        private
    {
        Status from = _lots[lotKey].status;
        if ((_TRANSITIONS >> (uint256(from) * 8 + uint256(to))) & 1 == 0) {
            revert InvalidTransition(lotKey, uint8(from), uint8(to));
        }
        _lots[lotKey] = Lot({status: to, updatedAt: uint64(block.timestamp), causeId: causeId});
        emit LotStatusChanged(lotKey, from, to, reasonHash, parentLotKey, msg.sender);
    }
}
