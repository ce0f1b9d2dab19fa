// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import "./Owned2Step.sol";

/// @title Authority
/// @author evidence-ledger
/// @notice Registry of agencies and of their members' Ed25519 signing keys, with roles, validity
///         windows and revocation. A verifier asks `wasAuthorized(keyId, role, atTime)` whether a
///         key held a role at the time a record was anchored.
/// @dev No external imports (only `Owned2Step` from this directory). Trust model:
///      - the owner registers agencies, (de)activates them and appoints each agency's admin;
///      - an agency admin (an address) registers keys of its own agency and revokes them; the
///        owner may also revoke any key (emergency).
///      Key ids are computed on chain: `keyId = sha256(publicKey)` (SHA-256 precompile), so a
///      verifier holding only the 32-byte Ed25519 public key derives the same id off chain.
///      Nothing is ever deleted and nothing can be back-dated: a key is never valid before the
///      block that registered it, revocation takes effect at the block that revoked it, and
///      agency (de)activations are kept as a history, so answers about the past never change.
contract Authority is Owned2Step {
    /// @notice Kinds of agency.
    enum AgencyKind {
        MarketRegulation,
        Tax,
        HumanResources,
        PublicSecurity,
        Court
    }

    /// @notice What a signing key may sign for.
    /// @dev Officer: captures and signs evidence; Inspector: signs inspection and quarantine
    ///      records; Auditor: signs audits and verifications; Anchorer: signs log checkpoints;
    ///      Admin: signs administrative acts (certificates, approvals). A key has exactly one role.
    enum Role {
        Officer,
        Inspector,
        Auditor,
        Anchorer,
        Admin
    }

    /// @notice Why a key was revoked (after RFC 5280 CRL reason codes).
    enum RevocationReason {
        Unspecified,
        KeyCompromise,
        AffiliationChanged,
        Superseded,
        CessationOfOperation
    }

    /// @notice An agency as registered.
    /// @dev `registeredAt` is never zero for a registered agency.
    struct Agency {
        AgencyKind kind;
        bool active;
        address admin;
        uint64 registeredAt;
        string name;
    }

    /// @notice A member's signing key.
    /// @dev The validity window is half-open: valid for `validFrom <= t < validUntil`.
    ///      `revokedAt` is 0 while the key is not revoked; once set, the key is not authorised at
    ///      any time `t >= revokedAt`.
    struct SigningKey {
        bytes32 publicKey;
        bytes32 agencyId;
        bytes32 memberId;
        Role role;
        uint64 validFrom;
        uint64 validUntil;
        uint64 revokedAt;
        RevocationReason revocationReason;
    }

    /// @dev One entry of an agency's activation history.
    struct StatusChange {
        uint64 at;
        bool active;
    }

    /// @dev Agencies by id.
    mapping(bytes32 agencyId => Agency agency) private _agencies;
    /// @dev Agency ids in registration order.
    bytes32[] private _agencyIds;
    /// @dev Per agency, its activation history (first entry: registration, active).
    mapping(bytes32 agencyId => StatusChange[] history) private _statusHistory;
    /// @dev Keys by key id (sha256 of the public key).
    mapping(bytes32 keyId => SigningKey key) private _keys;
    /// @dev Per agency, its key ids in registration order.
    mapping(bytes32 agencyId => bytes32[] keyIds) private _agencyKeyIds;

    /// @notice Agency `agencyId` was registered (active) by the owner.
    /// @param agencyId Identifier of the agency.
    /// @param kind Kind of agency.
    /// @param name Display name of the agency.
    /// @param admin Address appointed as the agency's admin.
    event AgencyRegistered(bytes32 indexed agencyId, AgencyKind kind, string name, address indexed admin);

    /// @notice Agency `agencyId` was activated or deactivated at block time `at`.
    /// @param agencyId Identifier of the agency.
    /// @param active New status.
    /// @param at Block timestamp from which the new status holds.
    event AgencyStatusChanged(bytes32 indexed agencyId, bool active, uint64 at);

    /// @notice The admin of agency `agencyId` changed (at registration, previousAdmin is zero).
    /// @param agencyId Identifier of the agency.
    /// @param previousAdmin Former admin (zero if none).
    /// @param newAdmin New admin (zero removes the admin).
    event AgencyAdminSet(bytes32 indexed agencyId, address indexed previousAdmin, address indexed newAdmin);

    /// @notice A signing key was registered for agency `agencyId`.
    /// @param keyId sha256 of the public key.
    /// @param agencyId Agency of the key's holder.
    /// @param memberId Opaque identifier of the holder (e.g. a salted hash of a staff number).
    /// @param publicKey Ed25519 public key (32 bytes).
    /// @param role Role of the key.
    /// @param validFrom Start of validity (inclusive, unix seconds).
    /// @param validUntil End of validity (exclusive, unix seconds).
    event KeyRegistered(
        bytes32 indexed keyId,
        bytes32 indexed agencyId,
        bytes32 indexed memberId,
        bytes32 publicKey,
        Role role,
        uint64 validFrom,
        uint64 validUntil
    );

    /// @notice Key `keyId` was revoked by `by`, effective from block time `revokedAt`.
    /// @param keyId Identifier of the key.
    /// @param agencyId Agency of the key.
    /// @param reason Reason for revocation.
    /// @param revokedAt Block timestamp from which the key is not authorised.
    /// @param by Agency admin or owner that revoked the key.
    event KeyRevoked(
        bytes32 indexed keyId, bytes32 indexed agencyId, RevocationReason reason, uint64 revokedAt, address indexed by
    );

    /// @notice The caller is not the admin of agency `agencyId` (nor, where allowed, the owner).
    /// @param agencyId Agency concerned.
    /// @param caller Account that called.
    error NotAgencyAdmin(bytes32 agencyId, address caller);

    /// @notice The agency id must not be zero.
    /// @param agencyId Rejected id.
    error InvalidAgencyId(bytes32 agencyId);

    /// @notice The agency kind is not a valid `AgencyKind`.
    /// @param kind Rejected value.
    error InvalidAgencyKind(uint8 kind);

    /// @notice The agency name must not be empty.
    /// @param agencyId Agency being registered.
    error EmptyAgencyName(bytes32 agencyId);

    /// @notice An agency with that id is already registered.
    /// @param agencyId Id of the existing agency.
    error AgencyAlreadyRegistered(bytes32 agencyId);

    /// @notice No agency with that id.
    /// @param agencyId Requested id.
    error AgencyNotFound(bytes32 agencyId);

    /// @notice The agency is deactivated, so no key can be registered for it.
    /// @param agencyId Agency concerned.
    error AgencyInactive(bytes32 agencyId);

    /// @notice The role is not a valid `Role`.
    /// @param role Rejected value.
    error InvalidRole(uint8 role);

    /// @notice The revocation reason is not a valid `RevocationReason`.
    /// @param reason Rejected value.
    error InvalidRevocationReason(uint8 reason);

    /// @notice The public key must not be zero.
    /// @param publicKey Rejected key.
    error InvalidPublicKey(bytes32 publicKey);

    /// @notice The validity window is empty: `validUntil` must exceed the effective `validFrom`.
    /// @param validFrom Effective start (the later of the requested start and the block time).
    /// @param validUntil Requested end.
    error InvalidValidityWindow(uint64 validFrom, uint64 validUntil);

    /// @notice A key with that id is already registered (revoked keys cannot be re-registered).
    /// @param keyId Id of the existing key.
    error KeyAlreadyRegistered(bytes32 keyId);

    /// @notice No key with that id.
    /// @param keyId Requested id.
    error KeyNotFound(bytes32 keyId);

    /// @notice The key is already revoked.
    /// @param keyId Id of the key.
    /// @param revokedAt Time from which it is revoked.
    error KeyAlreadyRevoked(bytes32 keyId, uint64 revokedAt);

    /// @notice Deploys the registry with `initialOwner` as owner.
    /// @param initialOwner Owner; must not be zero.
    constructor(address initialOwner) Owned2Step(initialOwner) {}

    // ------------------------------------------------------------------ agencies (owner)

    /// @notice Registers agency `agencyId` as active, with `admin` as its admin.
    /// @param agencyId Identifier (e.g. a hash of the agency's unified social credit code); not zero.
    /// @param kind An `AgencyKind` value.
    /// @param name Display name; not empty.
    /// @param admin Address that will manage the agency's keys; not zero.
    function registerAgency(bytes32 agencyId, uint8 kind, string calldata name, address admin)
        external
        onlyOwner
    {
        if (agencyId == bytes32(0)) revert InvalidAgencyId(agencyId);
        if (kind > uint8(type(AgencyKind).max)) revert InvalidAgencyKind(kind);
        if (bytes(name).length == 0) revert EmptyAgencyName(agencyId);
        if (admin == address(0)) revert ZeroAddress();
        if (_agencies[agencyId].registeredAt != 0) revert AgencyAlreadyRegistered(agencyId);
        uint64 at = uint64(block.timestamp);
        _agencies[agencyId] =
            Agency({kind: AgencyKind(kind), active: true, admin: admin, registeredAt: at, name: name});
        _agencyIds.push(agencyId);
        _statusHistory[agencyId].push(StatusChange({at: at, active: true}));
        emit AgencyRegistered(agencyId, AgencyKind(kind), name, admin);
        emit AgencyAdminSet(agencyId, address(0), admin);
    }

    /// @notice Activates or deactivates agency `agencyId` from now on. No-op (no event) if unchanged.
    /// @dev While inactive, the agency's keys are not authorised and no key can be registered.
    ///      The history is kept, so `wasAuthorized` for earlier times is unaffected.
    /// @param agencyId Identifier of the agency.
    /// @param active New status.
    function setAgencyStatus(bytes32 agencyId, bool active) external onlyOwner {
        Agency storage agency = _existingAgency(agencyId);
        if (agency.active == active) return;
        agency.active = active;
        uint64 at = uint64(block.timestamp);
        _statusHistory[agencyId].push(StatusChange({at: at, active: active}));
        emit AgencyStatusChanged(agencyId, active, at);
    }

    /// @notice Appoints `admin` as the admin of agency `agencyId` (zero removes the admin).
    ///         No-op (no event) if unchanged.
    /// @param agencyId Identifier of the agency.
    /// @param admin New admin, or zero.
    function setAgencyAdmin(bytes32 agencyId, address admin) external onlyOwner {
        Agency storage agency = _existingAgency(agencyId);
        address previousAdmin = agency.admin;
        if (previousAdmin == admin) return;
        agency.admin = admin;
        emit AgencyAdminSet(agencyId, previousAdmin, admin);
    }

    // ------------------------------------------------------------------ keys (agency admin)

    /// @notice Registers a signing key of a member of agency `agencyId`; only its admin may.
    /// @dev Keys cannot be back-dated: the effective start is max(`validFrom`, block time), and
    ///      it is the value stored and emitted. Pass 0 for "from now" and type(uint64).max for no
    ///      expiry.
    /// @param agencyId Agency of the key's holder; must exist and be active.
    /// @param publicKey Ed25519 public key (32 bytes); not zero.
    /// @param memberId Opaque identifier of the holder (may be zero).
    /// @param role A `Role` value.
    /// @param validFrom Requested start of validity (inclusive, unix seconds).
    /// @param validUntil End of validity (exclusive, unix seconds).
    /// @return keyId sha256(publicKey).
    function registerKey(
        bytes32 agencyId,
        bytes32 publicKey,
        bytes32 memberId,
        uint8 role,
        uint64 validFrom,
        uint64 validUntil
    ) external returns (bytes32 keyId) {
        Agency storage agency = _existingAgency(agencyId);
        if (msg.sender != agency.admin) revert NotAgencyAdmin(agencyId, msg.sender);
        if (!agency.active) revert AgencyInactive(agencyId);
        if (publicKey == bytes32(0)) revert InvalidPublicKey(publicKey);
        if (role > uint8(type(Role).max)) revert InvalidRole(role);
        uint64 start = validFrom < uint64(block.timestamp) ? uint64(block.timestamp) : validFrom;
        if (validUntil <= start) revert InvalidValidityWindow(start, validUntil);
        keyId = sha256(abi.encodePacked(publicKey));
        if (_keys[keyId].publicKey != bytes32(0)) revert KeyAlreadyRegistered(keyId);
        _keys[keyId] = SigningKey({
            publicKey: publicKey,
            agencyId: agencyId,
            memberId: memberId,
            role: Role(role),
            validFrom: start,
            validUntil: validUntil,
            revokedAt: 0,
            revocationReason: RevocationReason.Unspecified
        });
        _agencyKeyIds[agencyId].push(keyId);
        emit KeyRegistered(keyId, agencyId, memberId, publicKey, Role(role), start, validUntil);
    }

    /// @notice Revokes key `keyId` from now on; its agency's admin or the owner may.
    /// @dev Signatures the key made before the revoking block's time stay authorised.
    /// @param keyId Identifier of the key.
    /// @param reason A `RevocationReason` value.
    function revokeKey(bytes32 keyId, uint8 reason) external {
        SigningKey storage key = _keys[keyId];
        if (key.publicKey == bytes32(0)) revert KeyNotFound(keyId);
        bytes32 agencyId = key.agencyId;
        if (msg.sender != _agencies[agencyId].admin && msg.sender != owner()) {
            revert NotAgencyAdmin(agencyId, msg.sender);
        }
        if (key.revokedAt != 0) revert KeyAlreadyRevoked(keyId, key.revokedAt);
        if (reason > uint8(type(RevocationReason).max)) revert InvalidRevocationReason(reason);
        uint64 at = uint64(block.timestamp);
        key.revokedAt = at;
        key.revocationReason = RevocationReason(reason);
        emit KeyRevoked(keyId, agencyId, RevocationReason(reason), at, msg.sender);
    }

    // ------------------------------------------------------------------ views

    /// @notice Whether key `keyId` was authorised for `role` at time `atTime`.
    /// @dev True iff the key exists, has exactly that role, `validFrom <= atTime < validUntil`,
    ///      it was not revoked at or before `atTime` (`revokedAt == 0 || atTime < revokedAt`),
    ///      and its agency was active at `atTime`. Never reverts; unknown keys or roles give false.
    /// @param keyId sha256 of the signer's Ed25519 public key.
    /// @param role A `Role` value.
    /// @param atTime Time to judge (unix seconds), e.g. the anchoring block's timestamp.
    /// @return True if the key was authorised for `role` at `atTime`.
    function wasAuthorized(bytes32 keyId, uint8 role, uint64 atTime) external view returns (bool) {
        SigningKey storage key = _keys[keyId];
        if (key.publicKey == bytes32(0)) return false;
        if (uint8(key.role) != role) return false;
        if (atTime < key.validFrom || atTime >= key.validUntil) return false;
        if (key.revokedAt != 0 && key.revokedAt <= atTime) return false;
        return _agencyActiveAt(key.agencyId, atTime);
    }

    /// @notice Whether agency `agencyId` was registered and active at time `atTime`.
    /// @param agencyId Identifier of the agency.
    /// @param atTime Time to judge (unix seconds).
    /// @return True if the agency was active at `atTime` (false if unknown).
    function agencyActiveAt(bytes32 agencyId, uint64 atTime) external view returns (bool) {
        return _agencyActiveAt(agencyId, atTime);
    }

    /// @notice The key id of an Ed25519 public key: sha256(publicKey).
    /// @param publicKey Ed25519 public key (32 bytes).
    /// @return The key id.
    function computeKeyId(bytes32 publicKey) external pure returns (bytes32) {
        return sha256(abi.encodePacked(publicKey));
    }

    /// @notice Agency `agencyId`.
    /// @param agencyId Identifier of the agency.
    /// @return The agency; reverts with `AgencyNotFound` if unknown.
    function getAgency(bytes32 agencyId) external view returns (Agency memory) {
        return _existingAgency(agencyId);
    }

    /// @notice Ids of every registered agency, in registration order.
    /// @return The agency ids.
    function agencyIds() external view returns (bytes32[] memory) {
        return _agencyIds;
    }

    /// @notice Ids of every key registered for agency `agencyId`, in registration order.
    /// @param agencyId Identifier of the agency.
    /// @return The key ids (empty for an unknown agency).
    function agencyKeyIds(bytes32 agencyId) external view returns (bytes32[] memory) {
        return _agencyKeyIds[agencyId];
    }

    /// @notice Key `keyId`.
    /// @param keyId sha256 of the public key.
    /// @return The key; reverts with `KeyNotFound` if unknown.
    function getKey(bytes32 keyId) external view returns (SigningKey memory) {
        SigningKey storage key = _keys[keyId];
        if (key.publicKey == bytes32(0)) revert KeyNotFound(keyId);
        return key;
    }

    // ------------------------------------------------------------------ internals

    /// @dev The agency `agencyId`; reverts with `AgencyNotFound` if unknown.
    /// @param agencyId Identifier of the agency.
    /// @return agency Storage pointer to the agency.
    function _existingAgency(bytes32 agencyId) private view returns (Agency storage agency) {
        agency = _agencies[agencyId];
        if (agency.registeredAt == 0) revert AgencyNotFound(agencyId);
    }

    /// @dev Status of the agency at `atTime` from its history: the last change at or before it.
    /// @param agencyId Identifier of the agency.
    /// @param atTime Time to judge.
    /// @return True if active at `atTime`; false before registration or if unknown.
    function _agencyActiveAt(bytes32 agencyId, uint64 atTime) private view returns (bool) {
        StatusChange[] storage history = _statusHistory[agencyId];
        for (uint256 i = history.length; i > 0; --i) {
            StatusChange storage change = history[i - 1];
            if (change.at <= atTime) return change.active;
        }
        return false;
    }
}
