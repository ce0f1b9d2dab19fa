// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title Owned2Step
/// @author evidence-ledger
/// @notice Single-owner access control with a two-step ownership transfer: the owner proposes a
///         new owner, who must accept before ownership moves. Proposing the zero address cancels
///         a pending transfer.
/// @dev Abstract base of the ledger's contracts, after OpenZeppelin's `Ownable2Step` but
///      self-contained (no external imports). The inheriting contract passes its initial owner to
///      the constructor and guards owner-only functions with `onlyOwner`. The ownership API is
///      deliberately not `virtual`: inheriting contracts cannot alter its semantics.
abstract contract Owned2Step {
    /// @dev Current owner.
    address private _owner;
    /// @dev Account the owner proposed as the next owner, or zero.
    address private _pendingOwner;

    /// @notice The owner proposed `newOwner` as the next owner (zero cancels a proposal).
    /// @param previousOwner Current owner.
    /// @param newOwner Proposed owner, who must call `acceptOwnership`.
    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);

    /// @notice Ownership moved from `previousOwner` to `newOwner`.
    /// @param previousOwner Former owner (zero at construction).
    /// @param newOwner New owner.
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    /// @notice The caller is not the owner.
    /// @param caller Account that called an owner-only function.
    error NotOwner(address caller);

    /// @notice The caller is not the pending owner.
    /// @param caller Account that tried to accept ownership.
    error NotPendingOwner(address caller);

    /// @notice The zero address is not allowed here.
    error ZeroAddress();

    /// @dev Reverts with `NotOwner` unless the caller is the owner.
    modifier onlyOwner() {
        if (msg.sender != _owner) revert NotOwner(msg.sender);
        _;
    }

    /// @dev Makes `initialOwner` the owner, emitting `OwnershipTransferred(0, initialOwner)`.
    /// @param initialOwner First owner; must not be zero (reverts with `ZeroAddress`).
    constructor(address initialOwner) {
        if (initialOwner == address(0)) revert ZeroAddress();
        _transferOwnership(initialOwner);
    }

    /// @notice Current owner.
    /// @return The owner's address.
    function owner() public view returns (address) {
        return _owner;
    }

    /// @notice Account proposed as the next owner, or zero if no transfer is pending.
    /// @return The pending owner's address.
    function pendingOwner() public view returns (address) {
        return _pendingOwner;
    }

    /// @notice Starts a two-step ownership transfer to `newOwner`, who must then accept it.
    ///         Passing the zero address cancels a pending transfer.
    /// @param newOwner Proposed owner.
    function transferOwnership(address newOwner) external onlyOwner {
        _pendingOwner = newOwner;
        emit OwnershipTransferStarted(_owner, newOwner);
    }

    /// @notice Completes a pending ownership transfer; callable only by the pending owner.
    function acceptOwnership() external {
        if (msg.sender != _pendingOwner) revert NotPendingOwner(msg.sender);
        _transferOwnership(msg.sender);
    }

    /// @dev Sets the owner, clears any pending transfer and emits `OwnershipTransferred`.
    /// @param newOwner The new owner.
    function _transferOwnership(address newOwner) internal {
        address previousOwner = _owner;
        _owner = newOwner;
        delete _pendingOwner;
        emit OwnershipTransferred(previousOwner, newOwner);
    }
}
