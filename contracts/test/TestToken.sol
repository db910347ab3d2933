// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// FOR TESTS ONLY: an ERC-20 anyone can mint, and whose balances the tests can burn from any
/// address (to model a token that loses a holder's balance, e.g. a rebasing or seized one).
contract TestToken is ERC20 {
    constructor() ERC20("Glowworm Test Token", "GWT") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function burnFrom(address from, uint256 amount) external {
        _burn(from, amount);
    }
}
