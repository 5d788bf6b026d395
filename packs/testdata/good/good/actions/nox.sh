#!/bin/bash
echo "needs bash: ${BASH_VERSION:?}"
