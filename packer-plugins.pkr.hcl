# Kept apart from packer.pkr.hcl: Packer < 1.7 (Debian 12 ships 1.6.6) rejects this
# block, and validating packer.pkr.hcl alone keeps working offline with it.
# Packer >= 1.7:  packer init . && packer build .
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    amazon = {
      version = ">= 1.2.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}
