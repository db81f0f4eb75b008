ok "upper" "$(upper 'pyro')" PYRO
ok "repeat" "$(repeat ab 3)" ababab
ok "banner" "$(banner hi)" "$(printf '==\nHI\n==')"
