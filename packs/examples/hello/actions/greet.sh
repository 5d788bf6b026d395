#!/bin/sh
echo "Hello, ${TROUPE_PARAM_NAME}!"
