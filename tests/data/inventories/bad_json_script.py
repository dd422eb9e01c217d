#!/usr/bin/env python3
print('{"all": oops')
