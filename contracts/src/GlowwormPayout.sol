// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title Glowworm payouts: requesters deposit an ERC-20 token, the relay publishes what each
/// contributor has earned in total, contributors claim the difference.
///
/// Money flow:
/// - A requester calls `deposit(amount, requester)`. The tokens move into this contract and
///   `Deposited` tells the relay (after confirmations) to credit the requester's budget.
/// - At the end of each epoch the relay's publisher key calls `publishRoot(epoch, root, total)`:
///   `root` is an OpenZeppelin StandardMerkleTree of (address account, uint256 cumulativeAmount),
///   every address's lifetime earnings, and `total` is the sum of those amounts.
/// - Anyone calls `claim(account, cumulativeAmount, proof)` with a proof against the latest root;
///   the contract pays `account` what it has not yet been paid: cumulativeAmount - claimed[account].
///
/// Rules that keep it solvent whatever the publisher signs:
/// - Epochs are published strictly in order: epoch == latestEpoch + 1, the first is 1. A relay
///   that retries a publication after a crash gets `EpochOutOfOrder` instead of a skipped or
///   repeated epoch.
/// - `total` never decreases (earnings are lifetime sums) and never exceeds `totalDeposited`:
///   a root can only promise money that requesters have paid in.
/// - Claims never pay out more than `total` altogether (`totalClaimed <= latestTotal`), so a tree
///   whose leaves add up to more than its stated total cannot drain other people's deposits, and
///   never more than the token balance the contract holds.
/// - Deposits only leave through claims: there is no owner withdrawal.
contract GlowwormPayout is Ownable {
    using SafeERC20 for IERC20;

    /// The token deposited and paid out.
    IERC20 public immutable token;
    /// The only address allowed to publish roots (the relay's publisher key); the owner rotates it.
    address public publisher;
    /// The last published epoch; 0 before the first.
    uint64 public latestEpoch;
    /// The root of the last published epoch, the one claims are proven against.
    bytes32 public latestRoot;
    /// The sum of all lifetime earnings in the latest root.
    uint256 public latestTotal;
    /// Every token received through `deposit`, as measured by the contract's balance.
    uint256 public totalDeposited;
    /// Every token paid out through `claim`.
    uint256 public totalClaimed;
    /// What each account has been paid so far (its cumulative amount at its last claim).
    mapping(address account => uint256) public claimed;
    /// The root published for each epoch (kept so anyone can audit the history on chain).
    mapping(uint64 epoch => bytes32) public epochRoot;

    event Deposited(address indexed from, bytes32 indexed requester, uint256 amount);
    event RootPublished(uint64 indexed epoch, bytes32 root, uint256 total);
    event Claimed(address indexed account, uint256 amount, uint256 cumulativeAmount);
    event PublisherChanged(address indexed previous, address indexed next);

    error ZeroAddress();
    error ZeroAmount();
    error ZeroRoot();
    error NotPublisher(address caller);
    error EpochOutOfOrder(uint64 expected, uint64 given);
    error TotalDecreased(uint256 previous, uint256 given);
    error TotalExceedsDeposits(uint256 total, uint256 deposited);
    error NoRoot();
    error InvalidProof();
    error NothingToClaim(address account, uint256 cumulativeAmount, uint256 alreadyClaimed);
    error ClaimsExceedTotal(uint256 wouldBeClaimed, uint256 total);
    error InsufficientBalance(uint256 payment, uint256 balance);

    /// @param token_ the ERC-20 token requesters deposit and contributors are paid in.
    /// @param publisher_ the relay's publisher key. The deployer becomes the owner.
    constructor(IERC20 token_, address publisher_) Ownable(msg.sender) {
        if (address(token_) == address(0) || publisher_ == address(0)) revert ZeroAddress();
        token = token_;
        publisher = publisher_;
        emit PublisherChanged(address(0), publisher_);
    }

    /// Pulls `amount` tokens from the caller (who must have approved this contract) and credits
    /// them to `requester`, the relay-side identity whose budget they fund. Tokens that take a fee
    /// on transfer are credited with what actually arrived.
    function deposit(uint256 amount, bytes32 requester) external {
        if (amount == 0) revert ZeroAmount();
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = token.balanceOf(address(this)) - before;
        totalDeposited += received;
        emit Deposited(msg.sender, requester, received);
    }

    /// Publishes the root of epoch `epoch`, which must be `latestEpoch + 1`.
    /// `total` is the sum of the tree's amounts: not below the previous total, not above the
    /// deposits.
    function publishRoot(uint64 epoch, bytes32 root, uint256 total) external {
        if (msg.sender != publisher) revert NotPublisher(msg.sender);
        if (epoch != latestEpoch + 1) revert EpochOutOfOrder(latestEpoch + 1, epoch);
        if (root == bytes32(0)) revert ZeroRoot();
        if (total < latestTotal) revert TotalDecreased(latestTotal, total);
        if (total > totalDeposited) revert TotalExceedsDeposits(total, totalDeposited);
        latestEpoch = epoch;
        latestRoot = root;
        latestTotal = total;
        epochRoot[epoch] = root;
        emit RootPublished(epoch, root, total);
    }

    /// Pays `account` its lifetime earnings `cumulativeAmount` minus what it was already paid,
    /// given a proof of the leaf (account, cumulativeAmount) in the latest root. Anyone may send
    /// it; the tokens always go to `account`.
    function claim(address account, uint256 cumulativeAmount, bytes32[] calldata proof) external {
        if (latestEpoch == 0) revert NoRoot();
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount))));
        if (!MerkleProof.verifyCalldata(proof, latestRoot, leaf)) revert InvalidProof();
        uint256 already = claimed[account];
        if (cumulativeAmount <= already) revert NothingToClaim(account, cumulativeAmount, already);
        uint256 payment = cumulativeAmount - already;
        uint256 claimedAfter = totalClaimed + payment;
        if (claimedAfter > latestTotal) revert ClaimsExceedTotal(claimedAfter, latestTotal);
        uint256 balance = token.balanceOf(address(this));
        if (payment > balance) revert InsufficientBalance(payment, balance);
        claimed[account] = cumulativeAmount;
        totalClaimed = claimedAfter;
        token.safeTransfer(account, payment);
        emit Claimed(account, payment, cumulativeAmount);
    }

    /// The owner hands the publishing right to a new key (e.g. after the old one leaked).
    function setPublisher(address next) external onlyOwner {
        if (next == address(0)) revert ZeroAddress();
        emit PublisherChanged(publisher, next);
        publisher = next;
    }
}
