# The appliance AMI: the latest official Debian 12 AMI plus this repository installed by
# ami/provision.sh. Build (Packer >= 1.7):
#   packer init . && packer build -var arch=arm64 -var region=eu-west-1 .
# Validate offline with Debian's packer 1.6.6 (a syntax check: 1.6.6 predates metadata_options):
#   packer validate -syntax-only packer.pkr.hcl

variable "arch" {
  type        = string
  default     = "x86_64"
  description = "CPU architecture of the AMI: x86_64 or arm64."
  validation {
    condition     = contains(["x86_64", "arm64"], var.arch)
    error_message = "The arch value must be x86_64 or arm64."
  }
}

variable "region" {
  type        = string
  default     = "us-east-1"
  description = "Region to build the AMI in (copy it elsewhere with ami_regions)."
}

variable "ami_regions" {
  type        = list(string)
  default     = []
  description = "Extra regions to copy the finished AMI to."
}

variable "instance_type" {
  type        = string
  default     = ""
  description = "Builder instance type; empty picks t3.small (x86_64) or t4g.small (arm64)."
}

variable "ami_name_prefix" {
  type        = string
  default     = "appliance"
  description = "Prefix of the AMI name; the architecture and a timestamp are appended."
}

variable "subnet_id" {
  type        = string
  default     = ""
  description = "Subnet for the builder instance; empty uses the default VPC."
}

locals {
  debian_arch   = var.arch == "arm64" ? "arm64" : "amd64"
  instance_type = var.instance_type != "" ? var.instance_type : (var.arch == "arm64" ? "t4g.small" : "t3.small")
  timestamp     = formatdate("YYYYMMDDhhmmss", timestamp())
  src           = "/tmp/appliance-src"
}

source "amazon-ebs" "debian12" {
  region        = var.region
  ami_regions   = var.ami_regions
  instance_type = local.instance_type
  subnet_id     = var.subnet_id
  ssh_username  = "admin"
  ami_name      = "${var.ami_name_prefix}-debian12-${var.arch}-${local.timestamp}"
  ena_support   = true

  source_ami_filter {
    owners      = ["136693071363"] # Debian's official AWS account
    most_recent = true
    filters = {
      name                = "debian-12-${local.debian_arch}-*"
      architecture        = var.arch
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
  }

  # The builder itself uses IMDSv2 only, like the instances launched from the AMI.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  tags = {
    Name         = "${var.ami_name_prefix}-debian12-${var.arch}"
    Architecture = var.arch
  }
}

build {
  sources = ["source.amazon-ebs.debian12"]

  provisioner "shell" {
    inline = ["mkdir -p ${local.src}"]
  }

  provisioner "file" {
    sources     = ["${path.root}/appliance", "${path.root}/ami", "${path.root}/rules", "${path.root}/docs"]
    destination = "${local.src}/"
  }

  provisioner "file" {
    source      = "${path.root}/pyproject.toml"
    destination = "${local.src}/pyproject.toml"
  }

  provisioner "shell" {
    execute_command  = "sudo env {{ .Vars }} bash '{{ .Path }}'"
    environment_vars = ["SRC=${local.src}"]
    script           = "${path.root}/ami/provision.sh"
  }

  provisioner "shell" {
    inline = ["sudo rm -rf ${local.src}", "sudo cloud-init clean --logs"]
  }
}
